"""GDAL's CreateCopy (the work GeoTIFF into a COG or a tiled GeoTIFF) that a signal can stop.

The translation of a large scene takes minutes inside one GDAL call, during which Python runs no
signal handler: a ``docker stop`` (10 s of grace) would SIGKILL the process and leave its work
files. So the copy runs in a worker thread, through GDAL's C API (rasterio's own copy takes no
progress callback), with a progress callback that returns 0, which makes GDAL stop, once the
calling thread is interrupted (Ctrl-C, SIGTERM, SIGHUP); the caller then unwinds as after any
interruption and removes its work files. Where GDAL's library cannot be found in the process
(not Linux), the copy is rasterio's, as before, and not interruptible.
"""

from __future__ import annotations

import ctypes
import os
import threading

import rasterio
import rasterio.shutil
from rasterio.errors import RasterioIOError

#: GDAL's CPLErr of a failure (CE_Failure; CE_Fatal is 4).
_CE_FAILURE = 3
_PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p)


def _libgdal():
    """The GDAL library rasterio runs on, as ctypes sees it, or None where it is not found."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "libgdal" in line and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.GDALOpen.restype = ctypes.c_void_p
        lib.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.GDALGetDriverByName.restype = ctypes.c_void_p
        lib.GDALGetDriverByName.argtypes = [ctypes.c_char_p]
        lib.GDALCreateCopy.restype = ctypes.c_void_p
        lib.GDALCreateCopy.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
                                       ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), _PROGRESS,
                                       ctypes.c_void_p]
        lib.GDALClose.argtypes = [ctypes.c_void_p]
        lib.GDALClose.restype = None  # CPLErr since GDAL 3.7; the error state says it anyway
        lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
        lib.CPLGetLastErrorType.restype = ctypes.c_int
        return lib
    return None


def _failed(lib, what: str) -> RasterioIOError:
    message = (lib.CPLGetLastErrorMsg() or b"").decode(errors="replace").strip()
    return RasterioIOError(f"{what}: {message.splitlines()[0] if message else 'GDAL failed'}")


def _create_copy(lib, src: str, dst: str, driver: str, options: dict, stop: threading.Event
                 ) -> None:
    """GDALCreateCopy of ``src`` into ``dst``, stopped when ``stop`` is set."""
    items = [f"{k}={v}".encode() for k, v in options.items()]
    c_options = (ctypes.c_char_p * (len(items) + 1))(*items, None)
    progress = _PROGRESS(lambda done, message, data: 0 if stop.is_set() else 1)
    lib.CPLErrorReset()
    handle = lib.GDALOpen(src.encode(), 0)
    if not handle:
        raise _failed(lib, src)
    try:
        drv = lib.GDALGetDriverByName(driver.encode())
        if not drv:
            raise RasterioIOError(f"{dst}: GDAL has no {driver} driver")
        out = lib.GDALCreateCopy(drv, dst.encode(), handle, 1, c_options, progress, None)
        failed = not out or lib.CPLGetLastErrorType() >= _CE_FAILURE
        if out:
            lib.GDALClose(out)
            failed = failed or lib.CPLGetLastErrorType() >= _CE_FAILURE
        if failed and not stop.is_set():
            raise _failed(lib, dst)
    finally:
        lib.GDALClose(handle)


def translate(src: str | os.PathLike, dst: str | os.PathLike, driver: str, options: dict,
              config: dict | None = None) -> None:
    """Copy the raster ``src`` into a new ``dst`` with GDAL's ``driver`` and creation
    ``options`` (and the GDAL ``config`` options), stoppable by a signal as the module says;
    a ``RasterioIOError`` (GDAL's message, first line) when GDAL fails. An interruption of the
    caller is re-raised once GDAL has stopped (within one progress step: a block row)."""
    lib = _libgdal()
    if lib is None:
        with rasterio.Env(**(config or {})):
            rasterio.shutil.copy(src, dst, driver=driver, **options)
        return
    stop, outcome = threading.Event(), {}

    def work() -> None:
        try:
            with rasterio.Env(**(config or {})):  # GDAL's config options are per thread
                _create_copy(lib, os.fspath(src), os.fspath(dst), driver, options, stop)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="ssdiff-translate", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)  # a signal's handler runs here, in the main thread
    except BaseException:
        stop.set()
        worker.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
