"""The page's state store (cellssl_jax/app/state.py): labels, classes, the undo journal, the
one-server lock and an unwritable state folder."""

from __future__ import annotations

import os

import pytest

from cellssl_jax.app.state import UNSURE, StateError, StateStore, check_classes, open_state


def test_labels_and_undo_of_60_steps_survive_reopening(tmp_path):
    store = StateStore(tmp_path)
    store.set_classes(["a", "b", "c"])
    history = []  # the expected labels after each step
    labels: dict[str, str] = {}
    for i in range(60):
        name, label = f"cell_{i % 7}.jpg", "abc"[i % 3] if i % 5 else UNSURE
        store.set_label(name, label)
        labels[name] = label
        history.append(dict(labels))
    store.close()

    store = StateStore(tmp_path)  # a reload: a new connection to the same files
    assert store.labels() == history[-1]
    assert store.undo_depth() == 60
    for expected in reversed(history[:-1]):
        store.undo()
        assert store.labels() == expected
    store.undo()
    assert store.labels() == {}
    assert store.undo() is None


def test_undo_restores_the_label_before_a_correction(tmp_path):
    store = StateStore(tmp_path)
    store.set_classes(["a", "b"])
    store.set_label("x.jpg", "a")
    store.set_label("x.jpg", "b", "correction")
    assert store.label_kinds() == {"x.jpg": "correction"}
    step = store.undo()
    assert step["file"] == "x.jpg" and step["label"] == "a"
    assert store.labels() == {"x.jpg": "a"}


def test_every_change_moves_the_version(tmp_path):
    store = StateStore(tmp_path)
    seen = [store.version()]
    store.set_classes(["a", "b"])
    seen.append(store.version())
    store.set_label("x.jpg", "a")
    seen.append(store.version())
    store.undo()
    seen.append(store.version())
    assert seen == sorted(set(seen))


def test_bad_labels_and_classes_are_refused(tmp_path):
    store = StateStore(tmp_path)
    store.set_classes(["a", "b"])
    with pytest.raises(ValueError, match="unknown class 'c'"):
        store.set_label("x.jpg", "c")
    store.set_label("x.jpg", "a")
    with pytest.raises(ValueError, match=r"a \(1 cells\)"):
        store.set_classes(["b", "c"])
    assert store.classes() == ["a", "b"]
    for bad, match in [(["a"], "between 2"), (["a", "A"], "twice"), (["a", "x/y"], "x/y"),
                       (["a", ".."], "leading dot"), (["a", "?"], r"\?"), (["a", ""], "1-60")]:
        with pytest.raises(ValueError, match=match):
            check_classes(bad)
    assert check_classes([" a ", "b"]) == ["a", "b"]


def test_a_second_server_on_the_same_state_is_refused(tmp_path):
    store, lock = open_state(tmp_path / "state")
    lock.note("pid 123, http://127.0.0.1:9/")
    with pytest.raises(StateError, match=r"another server .*pid 123.*--state"):
        open_state(tmp_path / "state")
    store.close()
    lock.release()
    store, lock = open_state(tmp_path / "state")  # free again once released
    lock.release()


def test_a_state_folder_that_cannot_be_made_names_state(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(StateError, match=r"cannot write the state folder .*--state DIR"):
        open_state(tmp_path / "a_file" / ".cellssl")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_an_unwritable_state_folder_names_state(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StateError, match=r"cannot write .*--state DIR"):
            open_state(locked / ".cellssl")
    finally:
        locked.chmod(0o700)
