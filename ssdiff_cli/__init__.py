"""ssdiff: scene-scale pansharpening with the SSDiff diffusion model and classical methods.

The library can be used without the CLI::

    from ssdiff_cli.pipeline import sharpen, SharpenOptions
    report = sharpen("pan.tif", ["ms.tif"], "out.tif", SharpenOptions(method="mtf-glp"))
"""

__version__ = "0.1.0"
