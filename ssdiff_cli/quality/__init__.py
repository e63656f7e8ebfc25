"""Quality assessment of pansharpened images.

* :mod:`ssdiff_cli.quality.wald` builds reduced-resolution (Wald protocol) PAN/MS pairs.
* :mod:`ssdiff_cli.quality.indices` computes the standard indices (SAM, ERGAS, Q2n, SCC, Q, PSNR at
  reduced resolution; D_lambda, D_s, HQNR and QNR at full resolution) with bounded memory.
"""
