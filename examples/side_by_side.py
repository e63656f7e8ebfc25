"""The demo's quicklook: PAN, upsampled MS and the result side by side (crop where they differ),
and what ran: the method, what ``auto``'s guard measured (the model kept or its fallback, with
both HQNR figures) and, when the result came from a model, the model and the terms of the data
it was trained on.

Usage: side_by_side.py PAN UPSAMPLED.tif FUSED.tif REPORT.json OUT.png
(REPORT.json is ``ssdiff sharpen --json``'s output for FUSED.tif.)
"""

from __future__ import annotations

import json
import sys

import rasterio

from ssdiff_cli.quality.side_by_side import side_by_side
from ssdiff_cli.sensors import find_preset, fit_band_count


def guard_line(method: dict) -> str | None:
    """What ``auto``'s guard decided, with the HQNR figures it compared; None without a guard."""
    guard = method.get("guard")
    if guard is None:
        return None
    if guard.get("unmeasured"):
        return f"guard: the model kept unchecked ({guard['unmeasured']})"
    figures = (f"HQNR {guard['model']['HQNR']:.3f} for the model, {guard['base']['HQNR']:.3f} for "
               f"MTF-GLP-FS, on the central {guard['window'][2]} x {guard['window'][3]} px window")
    if guard["fallback"]:
        return f"guard: fell back to MTF-GLP-FS ({figures})"
    return f"guard: the model kept ({figures})"


def rgb_bands(sensor: str, fused: str) -> tuple[int, int, int]:
    """0-based true-colour bands of ``fused``: the detected sensor's, on the bands the MS has
    (WorldView-2's 4-band bundle: 3, 2, 1), else bands 3, 2, 1."""
    preset = find_preset(sensor.split(" (")[0])
    if preset is not None:
        with rasterio.open(fused) as ds:
            preset = fit_band_count(preset, ds.count)
    return preset.rgb if preset is not None else (2, 1, 0)


def main(pan: str, upsampled: str, fused: str, report_path: str, png: str) -> None:
    """Print what ran and write the side-by-side panel ``png``."""
    with open(report_path) as fh:
        report = json.load(fh)
    method = report["method"]
    label = f"result: {method['name']}"
    lines = [f"method: {method['name']}"]
    guard = guard_line(method)
    if guard:
        lines.append(guard)
        if method["guard"]["fallback"]:
            label += " (the model's fallback)"
    if method["name"] == "ssdiff":
        from ssdiff_cli import zoo

        card = zoo.read_card(method["model"])
        label += f" (model {card.name})"
        from ssdiff_cli.families import family_of

        family = family_of(card.model)
        if family.bands is not None:  # a family for any sensor (the generalist)
            lines.append(f"model: {card.name}, a generalist for any sensor "
                         f"({family.bands[0]}-{family.bands[1]} bands, ratio "
                         f"{family.ratios[0]}-{family.ratios[1]}); use: "
                         f"{zoo.terms_summary(card)}")
        else:
            lines.append(f"model: {card.name}, made for {card.sensor} data "
                         f"({card.bands} bands, ratio {card.ratio})")
        for term in card.training.get("terms", []):
            lines.append(f"trained on data whose terms are: {term}")
    rgb = rgb_bands(report["sensor"]["name"], fused)
    path, (row, col) = side_by_side(pan, upsampled, fused, png, rgb,
                                    titles=("PAN", "MS upsampled (cubic)", label))
    lines.append(f"quicklook: {path} (256 x 256 px crop at row {row}, column {col}, x2)")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
