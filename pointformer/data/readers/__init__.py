"""Dataset readers. Each resolves its dataset into ``SampleInfo`` records and registers the
point formats it needs; ``pointformer.data.infos.load_sample`` turns a record into a ``Sample``."""

from . import files  # noqa: F401  (registers bin / npy / pcd / ply / las)
from . import nuscenes  # noqa: F401  (registers the nuScenes / Lyft .bin point format)
from . import waymo  # noqa: F401  (registers waymo_v2)
from . import kitti  # noqa: F401
from . import custom  # noqa: F401
