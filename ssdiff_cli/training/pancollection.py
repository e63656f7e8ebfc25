"""PanCollection HDF5 training data, streamed with h5py one batch at a time.

Files hold ``gt``, ``ms``, ``lms``, ``pan`` as N x C x H x W float64 (``pan`` N x 1 x H x W),
already Wald-degraded, with values in digital numbers (scale 2047 for WV2/WV3/QB, 1023 for GF2).
Each batch reads its sorted sample indices from the file (never the whole file), divides by
``scale`` and, when ``crop`` is smaller than the patches (64 px), cuts a random ratio-aligned
crop with random flips and right-angle rotations. The last ``holdout`` fraction of the samples
is never drawn and is scored during training. Needs the optional dependency ``h5py``.
"""

from __future__ import annotations

import numpy as np

from ssdiff_cli.errors import BadInputError
from ssdiff_cli.training.crops import augment

KEYS = ("gt", "ms", "lms", "pan")


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - depends on the environment
        raise BadInputError("reading PanCollection files needs h5py (pip install h5py)") from None
    return h5py


class PanCollectionSource:
    """Random batches from a PanCollection file (see the module docstring)."""

    def __init__(self, path, crop: int = 32, scale: float = 2047.0, ratio: int = 4, seed: int = 0,
                 holdout: float = 0.1) -> None:
        h5py = _h5py()
        self.path, self.crop, self.scale, self.ratio = str(path), crop, float(scale), ratio
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise BadInputError(f"{path}: not a readable HDF5 file ({exc})") from None
        missing = [k for k in KEYS if k not in self.file]
        if missing:
            raise BadInputError(f"{path}: PanCollection file lacks {', '.join(missing)}")
        n, self.bands, self.size, _ = self.file["gt"].shape
        if self.size % ratio or crop % ratio or crop > self.size:
            raise BadInputError(f"{path}: patch {self.size} px, crop {crop}, ratio {ratio} do not fit")
        self.n_hold = int(round(n * holdout)) if n > 1 else 0
        self.n_train = n - self.n_hold
        self.rng = np.random.default_rng(seed)
        self.name = f"pancollection:{self.path}"

    def _read(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        order = np.argsort(idx)
        sorted_idx = idx[order]
        uniq, inverse = np.unique(sorted_idx, return_inverse=True)
        out = {}
        for k in KEYS:
            data = self.file[k][uniq.tolist()].astype(np.float32) / self.scale
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            out[k] = data[inverse][back]
        return out

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        idx = self.rng.integers(0, self.n_train, size=batch)
        d = self._read(idx)
        c, r = self.crop, self.ratio
        res = {"pan": [], "lms": [], "ms": [], "gt": []}
        for i in range(batch):
            y = int(self.rng.integers(0, (self.size - c) // r + 1)) * r
            x = int(self.rng.integers(0, (self.size - c) // r + 1)) * r
            k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            parts = augment([d["pan"][i, :, y:y + c, x:x + c], d["lms"][i, :, y:y + c, x:x + c],
                             d["ms"][i, :, y // r:(y + c) // r, x // r:(x + c) // r],
                             d["gt"][i, :, y:y + c, x:x + c]], k, flip)
            for key, a in zip(("pan", "lms", "ms", "gt"), parts):
                res[key].append(a)
        return {k: np.stack(v) for k, v in res.items()}

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def describe(self) -> dict:
        return {"name": self.name, "samples": self.n_train + self.n_hold, "holdout_samples": self.n_hold,
                "scale": self.scale, "terms": "PanCollection: see its licence"}


class PanCollectionHoldout:
    """The held-out samples of a PanCollection file, scored like a scene's hold-out strip."""

    def __init__(self, source: PanCollectionSource, limit: int = 64) -> None:
        self.source = source
        self.name = "pancollection_holdout"
        n = source.n_train + source.n_hold
        self.idx = np.arange(source.n_train, n)[:limit]

    def score(self, net, sampling) -> dict:
        """Fuse the held-out samples through the inference path
        (:func:`ssdiff_cli.methods.ssdiff.fuse_arrays` with ``sampling``, a
        :class:`~ssdiff_cli.methods.network.Sampling`) and score them."""
        from ssdiff_cli.methods.ssdiff import fuse_arrays
        from ssdiff_cli.quality import indices

        d = self.source._read(self.idx)
        fused = np.stack([fuse_arrays(net, sampling, d["lms"][i], d["pan"][i], d["ms"][i])
                          for i in range(len(self.idx))])
        # score all patches side by side as one image (blocks of 32 px stay within patches)
        f = np.concatenate(list(fused), axis=-1) * self.source.scale
        g = np.concatenate(list(d["gt"]), axis=-1) * self.source.scale
        s = indices.reduced_resolution(f, g, self.source.ratio, data_range=self.source.scale)
        return {k: float(s[k]) for k in ("SAM", "ERGAS", "Q2n", "SCC")}


def train_pancollection(path, config, scale: float = 2047.0, band_names=None, sensor: str = "wv3",
                        resume: bool = False, callback=None, progress=None):
    """Train from a PanCollection file (fixed normalisation by ``scale``)."""
    from ssdiff_cli.training.loop import Trainer, card_template

    source = PanCollectionSource(path, crop=config.crop, seed=config.seed, scale=scale)
    config.norm = "fixed"
    holdouts = [PanCollectionHoldout(source)] if source.n_hold else []
    card = card_template(config.name, [], config, sensor_key=sensor,
                         band_names=band_names or [f"b{i + 1}" for i in range(source.bands)],
                         bands=source.bands, ratio=source.ratio,
                         extra_training={"pancollection": source.describe()})
    card.normalisation = {"kind": "fixed", "scale": source.scale}
    trainer = Trainer(source, holdouts, card, config, resume=resume)
    return trainer.run(callback=callback, progress=progress)
