"""What frame-by-frame readers share: records built on first use, samples loaded from them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from pointformer.data.infos import SampleInfo, load_sample
from pointformer.structures import Sample


class LazyFrameReader(ABC):
    """A dataset of frames named by ``ids`` under ``root``; each record is built once, on use."""

    root: Path
    ids: list[str]

    def __init__(self) -> None:
        self._infos: dict[int, SampleInfo] = {}

    @abstractmethod
    def _build_info(self, frame_id: str) -> SampleInfo:
        """The record of one frame."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def infos(self) -> list[SampleInfo]:
        return [self.info(i) for i in range(len(self))]

    def info(self, index: int) -> SampleInfo:
        index = range(len(self))[index]
        if index not in self._infos:
            self._infos[index] = self._build_info(self.ids[index])
        return self._infos[index]

    def __getitem__(self, index: int) -> Sample:
        return load_sample(self.info(index), self.root)
