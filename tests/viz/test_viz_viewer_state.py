"""The interactive viewer's state: stepping through frames, class filter and score threshold
(the open3d window itself needs a display and is not opened here)."""

import numpy as np
import pytest
from viz_fixtures import make_sample

from pointformer.structures import Annotations, Boxes3D
from pointformer.viz.frames import Frame, filter_frame
from pointformer.viz.viewer import ViewerState


def _frames(count=3):
    frames = []
    for k in range(count):
        sample = make_sample(np.zeros((5, 4)), [[k, 0, 0, 4, 2, 1.5, 0], [k, 5, 0, 1, 1, 1.8, 0]], ["car", "pedestrian"],
                             meta={"sample_id": f"s{k}"})
        predictions = Annotations.from_boxes(
            Boxes3D(np.array([[k, 0, 0, 4, 2, 1.5, 0], [k, 9, 0, 4, 2, 1.5, 0], [k, 5, 0, 1, 1, 1.8, 0]])),
            ["car", "car", "pedestrian"])
        frames.append(Frame(sample, predictions, np.array([0.9, 0.2, 0.6])))
    return frames


def test_next_and_previous_wrap():
    state = ViewerState(_frames(), index=2)
    state.next()
    assert state.index == 0
    state.previous()
    state.previous()
    assert state.index == 1 and state.frame().sample.meta["sample_id"] == "s1"


def test_class_filter_cycles_through_the_classes_present():
    state = ViewerState(_frames())
    seen = []
    for _ in range(3):
        state.cycle_class()
        frame = state.frame()
        seen.append((sorted(state.classes or []), frame.sample.annotations.names, frame.predictions.names))
    assert seen == [(["car"], ["car"], ["car", "car"]), (["pedestrian"], ["pedestrian"], ["pedestrian"]),
                    ([], ["car", "pedestrian"], ["car", "car", "pedestrian"])]


def test_score_threshold_hides_low_scores_and_stays_in_range():
    state = ViewerState(_frames(), score_threshold=0.5)
    frame = state.frame()
    assert frame.predictions.names == ["car", "pedestrian"] and frame.scores.tolist() == [0.9, 0.6]
    assert len(frame.sample.annotations) == 2  # ground truth has no scores
    for _ in range(30):
        state.change_threshold(0.05)
    assert state.score_threshold == 1.0 and len(state.frame().predictions) == 0
    for _ in range(30):
        state.change_threshold(-0.05)
    assert state.score_threshold == 0.0
    assert "score 0.200" in state.status()


def test_colour_modes_cycle_and_fall_back_where_the_data_lacks_them():
    state = ViewerState(_frames())
    modes = []
    for _ in range(5):
        state.cycle_color()
        modes.append(state.color_by)
    assert modes == ["intensity", "time_lag", "semantic", "instance", "height"]
    state.color_by = "semantic"  # no point labels: drawn by height instead of failing
    assert state.geometry().points.shape == (5, 3)


def test_filter_frame_matches_a_loop():
    frame = _frames(1)[0]
    for classes in (None, {"car"}, {"bus"}):
        for threshold in (0.0, 0.5, 0.95):
            filtered = filter_frame(frame, classes, threshold)
            expected = [(n, s) for n, s in zip(frame.predictions.names, frame.scores)
                        if (classes is None or n in classes) and s >= threshold]
            assert list(zip(filtered.predictions.names, filtered.scores.tolist())) == expected
    with pytest.raises(ValueError, match="score_threshold"):
        filter_frame(frame, None, float("nan"))
    with pytest.raises(ValueError, match="at least one frame"):
        ViewerState([])


def test_viewer_window_keys_step_and_redraw(capsys):
    pytest.importorskip("open3d")
    from pointformer.viz.viewer import open_viewer

    state = ViewerState(_frames())
    try:
        visualizer, callbacks = open_viewer(state, width=64, height=48, visible=False)
    except RuntimeError:
        pytest.skip("open3d cannot open even a hidden window here")
    callbacks[ord("N")](visualizer)
    callbacks[ord("]")](visualizer)
    callbacks[263](visualizer)  # left arrow
    visualizer.destroy_window()
    assert state.index == 0 and state.score_threshold == 0.05
    printed = capsys.readouterr().out
    assert printed.count("[1/3]") == 2 and "[2/3]" in printed


def test_viewer_refuses_to_wait_without_a_display(monkeypatch):
    from pointformer.viz import viewer

    monkeypatch.setattr(viewer.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="no display"):
        viewer.run_viewer(ViewerState(_frames()))
