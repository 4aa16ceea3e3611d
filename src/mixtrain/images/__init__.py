"""Images for training data and inference: resolve and cache (``resolve``), verify in bulk (``verify``),
decode in-memory payloads (``decode``), dataset cell references (``refs``) and the content-addressed
store that ``dataset create`` fills (``store``).

Every name the single ``images.py`` module had is still importable from here. PIL, httpx and pyarrow are
imported inside functions: the CLI process imports this package and must stay fast.
"""

from mixtrain.images.decode import image_from_bytes, image_from_data_url
from mixtrain.images.refs import IMAGES_DIR, cell_refs, is_ref, ref_label, ref_type, stored_path, stored_ref
from mixtrain.images.resolve import (
    _EXT,
    MAX_BYTES,
    MAX_PIXELS,
    ImageTooLarge,
    _bomb,
    _download,
    _inspect,
    _local_file,
    _shown,
    _write_atomic,
    load_image,
    resolve_image,
    table_image_ref,
)
from mixtrain.images.verify import (
    POOL_MIN,
    QUICK_MAX_BYTES,
    VERIFIED_FILE,
    _cpus,
    _local_key,
    _quick_check,
    _resolve_quietly,
    _verify_chunk,
    _verify_one,
    verify_images,
)

__all__ = [
    "IMAGES_DIR",
    "MAX_BYTES",
    "MAX_PIXELS",
    "POOL_MIN",
    "QUICK_MAX_BYTES",
    "VERIFIED_FILE",
    "_EXT",
    "ImageTooLarge",
    "_bomb",
    "_cpus",
    "_download",
    "_inspect",
    "_local_file",
    "_local_key",
    "_quick_check",
    "_resolve_quietly",
    "_shown",
    "_verify_chunk",
    "_verify_one",
    "_write_atomic",
    "cell_refs",
    "image_from_bytes",
    "image_from_data_url",
    "is_ref",
    "load_image",
    "ref_label",
    "ref_type",
    "resolve_image",
    "stored_path",
    "stored_ref",
    "table_image_ref",
    "verify_images",
]
