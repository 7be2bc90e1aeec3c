"""xanes_lib: the thin shared library of the XANES notebook collection.

Rooms follow the data flow (io -> alignment -> denoising -> mapping -> io); simulation and
evaluation stand beside it:

- :mod:`io`          stack files (FXI-compatible), results files, flat-field correction
- :mod:`spectra`     reference spectra: parametric edge model, shipped library, users' files
- :mod:`physics`     the linear absorbance model with its reference basis, materials
- :mod:`simulation`  phantoms, beam background, detector, data sets with ground truth; the
  foreign test family made by independent code
- :mod:`alignment`   registration of the images across energies, shifts, common field of view
- :mod:`denoising`   networks, losses, inference, beam background, strength chosen per stack,
  training, adaptation (the only package that imports torch)
- :mod:`mapping`     normalisation, edge energies, mask, reference fits, energy shift, flags
- :mod:`chunked`     the same pipeline on Dask arrays: stacks larger than memory, 3-D XANES
- :mod:`evaluation`  classical pipelines and metrics against ground truth (simulated files)
- :mod:`explorer`    the interactive explorer: click a pixel or drag a region on a map (ipympl)
- :mod:`validate`, :mod:`config`, :mod:`progress`, :mod:`plot`, :mod:`notebooks`: input
  checks, the configuration scheme, progress bars, figures, the papermill runner and report

Import the rooms, not their files: ``from xanes_lib import io, mapping``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
