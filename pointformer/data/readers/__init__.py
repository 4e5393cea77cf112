"""Dataset readers. Each resolves its dataset into ``SampleInfo`` records and registers the
point formats it needs; ``pointformer.data.infos.load_sample`` turns a record into a ``Sample``."""

from . import files  # noqa: F401  (registers bin / npy)
