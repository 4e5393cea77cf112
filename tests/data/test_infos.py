"""Info files: malformed records name the file, the record and the key; annotation records keep
their box width."""

from __future__ import annotations

import json

import pytest
import torch

from pointformer.data.infos import (
    PointSource,
    SampleInfo,
    annotations_from_record,
    annotations_to_record,
    empty_annotations_record,
    load_infos,
    record_box_dim,
    save_infos,
)
from pointformer.structures import Annotations, Boxes3D


def good_records() -> list[dict]:
    sweep = PointSource("s.bin", "bin", time_lag=0.05)
    return [
        SampleInfo("custom", "a", PointSource("a.bin", "bin"), [sweep, sweep], max_sweeps=2).to_dict(),
        SampleInfo("custom", "b", PointSource("b.bin", "bin")).to_dict(),
    ]


def write_document(path, records) -> None:
    path.write_text(json.dumps({"info_version": 1, "infos": records}))


def test_valid_records_round_trip(tmp_path):
    infos = [SampleInfo.from_dict(r) for r in good_records()]
    save_infos(tmp_path / "infos.json", infos, dataset="custom")
    loaded, header = load_infos(tmp_path / "infos.json")
    assert [i.to_dict() for i in loaded] == good_records() and header["dataset"] == "custom"
    assert loaded[0].sweeps[1].time_lag == 0.05 and loaded[0].lidar.columns == ("x", "y", "z", "intensity")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r[1].update(smaple_id=r[1].pop("sample_id")),
         r"info record 1: unknown key 'smaple_id' \(did you mean 'sample_id'\?\)"),
        (lambda r: r[0].pop("lidar"), r"info record 0: missing required key 'lidar'"),
        (lambda r: r[1].pop("sample_id"), r"info record 1: missing required key 'sample_id'"),
        (lambda r: r[0]["lidar"].update(colums=r[0]["lidar"].pop("columns")),
         r"info record 0: lidar: unknown key 'colums' \(did you mean 'columns'\?\)"),
        (lambda r: r[0]["sweeps"][1].pop("format"), r"info record 0: sweeps\[1\]: missing required key 'format'"),
        (lambda r: r[0]["sweeps"][0].update(time_lga=0.1), r"info record 0: sweeps\[0\]: unknown key 'time_lga' \(did you mean 'time_lag'"),
        (lambda r: r[1].update(zzz=1), r"info record 1: unknown key 'zzz'; valid keys: dataset, sample_id"),
        (lambda r: r.append("frame"), r"info record 2: expected an object"),
        (lambda r: r[1].update(lidar="b.bin"), r"info record 1: lidar: expected an object"),
        (lambda r: r[1].update(sweeps={}), r"info record 1: 'sweeps' must be a list"),
    ],
)
def test_malformed_records_name_file_record_and_key(tmp_path, edit, message):
    records = good_records()
    edit(records)
    write_document(tmp_path / "bad_infos.json", records)
    with pytest.raises(ValueError, match=r"bad_infos\.json: " + message):
        load_infos(tmp_path / "bad_infos.json")


def test_infos_not_a_list(tmp_path):
    (tmp_path / "i.json").write_text(json.dumps({"info_version": 1, "infos": {"a": 1}}))
    with pytest.raises(ValueError, match=r"i\.json: 'infos' must be a list"):
        load_infos(tmp_path / "i.json")


def test_annotation_records_keep_their_box_width():
    seven = Annotations.from_boxes(Boxes3D(torch.ones(2, 7)), ["car", "car"])
    assert record_box_dim(annotations_to_record(seven)) == 7
    assert annotations_from_record(annotations_to_record(seven)).boxes.tensor.shape == (2, 7)
    assert record_box_dim(annotations_to_record(Annotations.empty(False))) == 7
    assert annotations_from_record(annotations_to_record(Annotations.empty(False))).boxes.tensor.shape == (0, 7)
    assert annotations_from_record(empty_annotations_record(7)).boxes.tensor.shape == (0, 7)
    assert annotations_from_record(empty_annotations_record(9)).boxes.tensor.shape == (0, 9)
    assert record_box_dim(None) is None and record_box_dim({"boxes": []}) is None
    assert annotations_from_record(None).boxes.tensor.shape == (0, 9)
    assert annotations_from_record(None, with_velocity=False).boxes.tensor.shape == (0, 7)
    with pytest.raises(ValueError, match="box_dim must be 7 or 9"):
        empty_annotations_record(8)
    mixed = annotations_to_record(seven)
    mixed["boxes"][1] = mixed["boxes"][1] + [0.0, 0.0]
    with pytest.raises(ValueError, match=r"frame x: boxes must all be 7 or all 9 wide, got widths \[7, 9\]"):
        annotations_from_record(mixed, where="frame x")
    eight = dict(annotations_to_record(seven), box_dim=8, boxes=[[0.0] * 8] * 2)
    with pytest.raises(ValueError, match=r"got widths \[8\]"):
        annotations_from_record(eight)


def test_packed_infos_round_trip_and_indexing():
    from pointformer.data.infos import PackedInfos, PointSource, SampleInfo

    infos = [
        SampleInfo("custom", f"s{i}", PointSource(f"{i}.bin", "bin"), sweeps=[PointSource("p.bin", "bin", time_lag=0.05)],
                   annotations={"box_dim": 7, "boxes": [[i, 0, 0, 1, 1, 1, None]], "names": ["car"], "num_points": [3],
                                "attributes": [""], "ids": ["a"]}, max_sweeps=1, meta={"k": [1, 2]})
        for i in range(5)
    ]
    packed = PackedInfos(infos)
    assert len(packed) == 5 and list(packed) == infos
    assert packed[-1] == infos[-1] and packed[1:3] == infos[1:3]
    assert packed.nbytes > 0 and len(PackedInfos([])) == 0
    with pytest.raises(IndexError):
        packed[5]



def test_packed_infos_name_a_record_that_is_not_json_safe():
    from pointformer.data.infos import PackedInfos, PointSource, SampleInfo

    bad = SampleInfo("custom", "frame-7", PointSource("a.bin", "bin"), meta={"score": float("nan")})
    with pytest.raises(ValueError, match="'frame-7' is not JSON-safe"):
        PackedInfos([bad])
