"""xanes_lib: the thin shared library of the XANES notebook collection.

Modules (data flows one way: io -> simulate -> physics/fit <- model/train -> io):

- :mod:`validate`   shared input checks (energies, stacks, units)
- :mod:`io`         HDF5 stack files (FXI-compatible) and their validation
- :mod:`flatfield`  dark/flat correction
- :mod:`spectra`    reference spectra: parametric model, shipped library, users' files
- :mod:`materials`  NMC compositions and tabulated cross-sections (xraydb)
- :mod:`phantom`    particle geometry and oxidation-state maps
- :mod:`background` the smooth multiplicative beam background
- :mod:`simulate`   Beer-Lambert, beam and detector: noisy stacks with ground truth
- :mod:`datasets`   training / validation / test sets of simulated stacks
- :mod:`physics`    the linear absorbance model and its closed-form fit
- :mod:`fit`        normalisation, edge energies, per-pixel reference fits with uncertainties
- :mod:`results`    HDF5 results files (maps of oxidation state, fractions, residual...)
- :mod:`notebooks`  the papermill runner of the numbered notebooks
"""

__version__ = "0.1.0"
