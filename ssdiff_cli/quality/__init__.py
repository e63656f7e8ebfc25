"""Quality assessment of pansharpened images.

* :mod:`ssdiff_cli.quality.wald` builds reduced-resolution (Wald protocol) PAN/MS pairs.
* :mod:`ssdiff_cli.quality.indices` is the public face of the standard indices (SAM, ERGAS, Q2n,
  SCC, Q, PSNR at reduced resolution; D_lambda, D_s, HQNR and QNR at full resolution), computed
  with bounded memory by the modules it lists (scorers, strip machinery, kernels).
* :mod:`ssdiff_cli.quality.quicklook` and :mod:`ssdiff_cli.quality.side_by_side` make quicklook
  PNGs (composites, and the demo's side-by-side panel).
"""
