"""The demo's quicklook: PAN, upsampled MS and the result side by side (crop where they differ),
and, when the result came from a model, the model and the terms of the data it was trained on.

Usage: side_by_side.py PAN UPSAMPLED.tif FUSED.tif REPORT.json OUT.png
(REPORT.json is ``ssdiff sharpen --json``'s output for FUSED.tif.)
"""

from __future__ import annotations

import json
import sys

from ssdiff_cli.quality.side_by_side import side_by_side
from ssdiff_cli.sensors import get_preset


def main(pan: str, upsampled: str, fused: str, report_path: str, png: str) -> None:
    with open(report_path) as fh:
        report = json.load(fh)
    method = report["method"]
    label = f"result: {method['name']}"
    lines = [f"method: {method['name']}"]
    if method["name"] == "ssdiff":
        from ssdiff_cli import zoo

        card = zoo.read_card(method["model"])
        label += f" (model {card.name})"
        if zoo.is_generalist(card):
            lines.append(f"model: {card.name}, a generalist for any sensor "
                         f"({zoo.GENERALIST_BANDS[0]}-{zoo.GENERALIST_BANDS[1]} bands, ratio "
                         f"{zoo.GENERALIST_RATIOS[0]}-{zoo.GENERALIST_RATIOS[1]}); use: "
                         f"{zoo.terms_summary(card)}")
        else:
            lines.append(f"model: {card.name}, made for {card.sensor} data "
                         f"({card.bands} bands, ratio {card.ratio})")
        for term in card.training.get("terms", []):
            lines.append(f"trained on data whose terms are: {term}")
    try:
        rgb = get_preset(report["sensor"]["name"].split(" (")[0]).rgb
    except Exception:  # a generic sensor: bands 3, 2, 1
        rgb = (2, 1, 0)
    path, (row, col) = side_by_side(pan, upsampled, fused, png, rgb,
                                    titles=("PAN", "MS upsampled (cubic)", label))
    lines.append(f"quicklook: {path} (256 x 256 px crop at row {row}, column {col}, x2)")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
