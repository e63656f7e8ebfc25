"""A small line plot of training curves drawn with Pillow (matplotlib is not a dependency)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

_COLOURS = {"loss": (31, 119, 180), "ERGAS": (214, 39, 40), "SAM": (44, 160, 44)}


def _series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    out = []
    for r in rows:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v) and v > 0:
            out.append((float(r["step"]), float(v)))
    return out


def plot_log(rows: list[dict], path: str | Path, title: str = "", size=(900, 420)) -> Path:
    """Loss (left panel, log scale) and hold-out ERGAS and SAM (right panel) against step."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.text((10, 5), f"{title}  training curves", fill="black")
    panels = [(["loss"], (50, 30, w // 2 - 20, h - 40), True),
              (["ERGAS", "SAM"], (w // 2 + 40, 30, w - 20, h - 40), False)]
    for keys, (x0, y0, x1, y1), logy in panels:
        d.rectangle((x0, y0, x1, y1), outline="black")
        data = {k: _series(rows, k) for k in keys}
        pts = [p for v in data.values() for p in v]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [math.log10(p[1]) if logy else p[1] for p in pts]
        xmin, xmax = min(xs), max(max(xs), min(xs) + 1)
        ymin, ymax = min(ys), max(ys)
        if ymax - ymin < 1e-9:
            ymin, ymax = ymin - 0.5, ymax + 0.5

        def px(x, y, xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax, box=(x0, y0, x1, y1)):
            bx0, by0, bx1, by1 = box
            return (bx0 + (x - xmin) / (xmax - xmin) * (bx1 - bx0),
                    by1 - (y - ymin) / (ymax - ymin) * (by1 - by0))

        for i, (k, series) in enumerate(data.items()):
            col = _COLOURS.get(k, (0, 0, 0))
            line = [px(x, math.log10(y) if logy else y) for x, y in series]
            if len(line) > 1:
                d.line(line, fill=col, width=2)
            elif line:
                d.ellipse((line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2), fill=col)
            last = series[-1][1] if series else float("nan")
            d.text((x0 + 5, y0 + 5 + 14 * i), f"{k} (last {last:.4g})", fill=col)
        lo, hi = (10**ymin, 10**ymax) if logy else (ymin, ymax)
        d.text((x0 - 45, y0), f"{hi:.3g}", fill="black")
        d.text((x0 - 45, y1 - 10), f"{lo:.3g}", fill="black")
        d.text((x0, y1 + 5), f"step {int(xmin)}", fill="black")
        d.text((x1 - 80, y1 + 5), f"step {int(xmax)}", fill="black")
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)
    return path
