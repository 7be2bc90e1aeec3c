"""``python -m xanes_lib.spectra calibrate ...``: rebuild the shipped reference library."""

import sys

from .calibration import main

sys.exit(main())
