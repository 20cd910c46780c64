from ensemble.training.trainer import last_complete_checkpoint


def _checkpoint(root, step, complete):
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (d / "trainer_state.json").write_text("{}")
    return d


def test_resume_skips_a_checkpoint_killed_while_being_written(tmp_path):
    done = _checkpoint(tmp_path, 2, complete=True)
    half = _checkpoint(tmp_path, 3, complete=False)
    assert last_complete_checkpoint(tmp_path) == str(done)
    assert not half.exists()
    assert done.exists()


def test_a_state_file_cut_short_is_not_a_finished_checkpoint(tmp_path):
    done = _checkpoint(tmp_path, 4, complete=True)
    cut = _checkpoint(tmp_path, 6, complete=False)
    (cut / "trainer_state.json").write_text('{"global_step": 6, "log_hi')
    assert last_complete_checkpoint(tmp_path) == str(done)
    assert not cut.exists()


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    _checkpoint(tmp_path, 1, complete=False)
    (tmp_path / "checkpoint-notes").mkdir()
    assert last_complete_checkpoint(tmp_path) is None
    assert (tmp_path / "checkpoint-notes").exists()
