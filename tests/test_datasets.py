"""Demo datasets: robomimic layout, appending, resuming after interruption, worker-count independence, replay."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mu0sim.datasets import DatasetError, DatasetWriter, EpisodeRecord, make_env_from_dataset, open_dataset
from mu0sim.datasets.replay import replay_dataset, rerender_dataset
from mu0sim.rollouts.collect import CollectConfig, collect

CAMERA_KWARGS = dict(cameras=("agentview",), image_size=32, depth=True)


def _collect(path, episodes, **kwargs):
    config = CollectConfig(task="Lift", robot="Panda", episodes=episodes, out=Path(path), **kwargs)
    return collect(config, progress=False)


@pytest.fixture(scope="module")
def lift_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "lift.hdf5"
    summary = _collect(path, 3, **CAMERA_KWARGS)
    assert (summary.attempted, summary.kept, summary.total_demos) == (3, 3, 3)
    return path


def test_file_reads_like_robomimic_sequence_dataset(lift_dataset):
    """Mirror what robomimic's SequenceDataset and file_utils read (robomimic itself needs torchvision here)."""
    with h5py.File(lift_dataset, "r") as f:
        env_meta = json.loads(f["data"].attrs["env_args"])  # FileUtils.get_env_metadata_from_dataset
        assert env_meta["type"] == 1 and env_meta["env_name"] == "Lift"
        assert env_meta["env_kwargs"]["robots"] == "Panda" and "controller_configs" in env_meta["env_kwargs"]
        demos = list(f["data"].keys())  # load_demo_info: every child of data is a demo_<int>
        demos = [demos[i] for i in np.argsort([int(name[5:]) for name in demos])]
        assert demos == ["demo_0", "demo_1", "demo_2"]
        total = 0
        for ep in demos:
            group = f[f"data/{ep}"]
            n = group.attrs["num_samples"]
            total += n
            assert isinstance(group.attrs["model_file"], str) and group.attrs["model_file"].startswith("<mujoco")
            for key in ("actions", "rewards", "dones", "states"):  # dataset_keys, read with astype(float32)
                assert group[key].shape[0] == n
                group[key][()].astype("float32")
            assert group["actions"].shape == (n, 7) and np.abs(group["actions"][()]).max() <= 1
            assert group["dones"][-1] == 1
            for prefix in ("obs", "next_obs"):  # obs_keys, load_next_obs=True
                for key in ("robot0_eef_pos", "object", "agentview_image", "agentview_depth"):
                    assert f[f"data/{ep}/{prefix}/{key}"].shape[0] == n
            assert group["obs/agentview_image"].dtype == np.uint8 and group["obs/agentview_image"].shape[1:] == (32, 32, 3)
            np.testing.assert_array_equal(group["next_obs/robot0_eef_pos"][:-1], group["obs/robot0_eef_pos"][1:])
            assert group["camera/agentview/cam_to_world"].shape == (n, 4, 4)
            assert json.loads(group.attrs["ep_meta"])["lang"] == "lift the red cube"
        assert f["data"].attrs["total"] == total
        train = [e.decode("utf-8") for e in np.array(f["mask/train"][:])]  # filter_by_attribute
        assert sorted(train + [e.decode("utf-8") for e in f["mask/valid"][:]]) == demos


def test_env_rebuilt_from_dataset_matches_recording(lift_dataset):
    env = make_env_from_dataset(lift_dataset)
    with h5py.File(lift_dataset, "r") as f:
        seed = int(f["data/demo_1"].attrs["seed"])
        recorded = f["data/demo_1/obs/agentview_image"][0]
        states = f["data/demo_1/states"][0]
    obs, _ = env.reset(seed=seed)
    np.testing.assert_array_equal(obs["agentview_image"], recorded)
    np.testing.assert_array_equal(env.unwrapped.get_state(), states)
    env.close()


def test_replay_reproduces_recorded_states(lift_dataset):
    report = replay_dataset(lift_dataset, progress=False)
    assert report.demos == 3 and report.success_reproduced == 3
    assert report.max_state_divergence < 1e-4


def test_rerender_at_other_camera_and_size(lift_dataset, tmp_path):
    out = tmp_path / "rerendered.hdf5"
    assert rerender_dataset(lift_dataset, out, progress=False, cameras=("frontview",), image_size=48, depth=False) == 3
    with h5py.File(out, "r") as f, h5py.File(lift_dataset, "r") as src:
        assert f["data/demo_0/obs/frontview_image"].shape[1:] == (48, 48, 3)
        assert "agentview_image" not in f["data/demo_0/obs"]
        np.testing.assert_array_equal(f["data/demo_0/states"][()], src["data/demo_0/states"][()])
        assert json.loads(f["data"].attrs["env_args"])["mu0sim"]["kwargs"]["cameras"] == ["frontview"]
    with pytest.raises(FileExistsError):
        rerender_dataset(lift_dataset, out, progress=False)


def test_append_continues_seeds_and_same_file_whatever_the_worker_count(tmp_path):
    one, two = tmp_path / "one.hdf5", tmp_path / "two.hdf5"
    _collect(one, 2)
    summary = _collect(one, 4)  # append
    assert (summary.attempted, summary.total_demos) == (2, 4)
    _collect(two, 4, workers=2)
    with h5py.File(one, "r") as a, h5py.File(two, "r") as b:
        np.testing.assert_array_equal(a["mu0sim/attempts"][()], b["mu0sim/attempts"][()])
        for name in a["data"]:
            np.testing.assert_array_equal(a[f"data/{name}/states"][()], b[f"data/{name}/states"][()])
            np.testing.assert_array_equal(a[f"data/{name}/actions"][()], b[f"data/{name}/actions"][()])


def test_interrupted_collect_leaves_a_valid_file_and_resumes(tmp_path):
    out = tmp_path / "lift.hdf5"
    cmd = [sys.executable, "-m", "mu0sim", "collect", "--task", "Lift", "--robot", "Panda", "--episodes", "40",
           "--out", str(out)]
    # a shell's background job (e.g. CI started with `&`) ignores SIGINT and children inherit that; give the child
    # the default disposition so that Python turns SIGINT into KeyboardInterrupt as it does for a user's Ctrl-C
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = out.with_name(out.name + ".journal")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(journal.glob("*.pkl"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    with open_dataset(out) as f:  # valid, and holds what finished
        interrupted_demos = len(f["data"])
    assert 2 <= interrupted_demos < 40
    summary = _collect(out, interrupted_demos + 2)
    assert summary.total_demos == interrupted_demos + 2 and summary.attempted == 2
    with open_dataset(out) as f:
        seeds = [int(f[f"data/demo_{i}"].attrs["seed"]) for i in range(len(f["data"]))]
    assert seeds == list(range(interrupted_demos + 2))


def test_ctrl_c_inside_numba_code_counts_as_an_interruption(monkeypatch, tmp_path, capsys):
    # CI caught it: SIGINT during robosuite's numba-compiled OSC step surfaces as SystemError caused by the interrupt
    from mu0sim import cli

    def interrupted_in_numba(args):  # as seen: the interrupt, wrapped by numba's unpickler, then by the dispatcher
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as err:
                raise SystemError("<function _numba_unpickle> returned a result with an exception set") from err
        except SystemError as err:
            raise SystemError("CPUDispatcher(...) returned a result with an exception set") from err

    monkeypatch.setattr(cli, "_cmd_collect", interrupted_in_numba)
    argv = ["collect", "--task", "Lift", "--robot", "Panda", "--episodes", "1", "--out", str(tmp_path / "x.hdf5")]
    assert cli.main(argv) == 130
    assert "interrupted; finished work is kept" in capsys.readouterr().err

    def unrelated_system_error(args):
        raise SystemError("a real bug")

    monkeypatch.setattr(cli, "_cmd_collect", unrelated_system_error)
    with pytest.raises(SystemError, match="a real bug"):
        cli.main(argv)


def test_collect_passes_expert_options_and_records_them(tmp_path, capsys):
    from mu0sim import cli

    out = tmp_path / "stack.hdf5"
    base = ["collect", "--task", "Stack", "--robot", "Panda", "--episodes", "1", "--out", str(out)]
    assert cli.main(base + ["--expert-option", "settle_steps=4", "--expert-option", "hover_m=0.07"]) == 0
    with open_dataset(out) as f:
        options = json.loads(f["data"].attrs["collection"])["expert_options"]
    assert options["settle_steps"] == 4 and options["hover_m"] == 0.07
    assert cli.main(base + ["--expert-option", "settle=4"]) == 2
    assert "unknown Stack expert option 'settle'; valid Stack expert options: hover_m, settle_steps" in \
        capsys.readouterr().err
    assert cli.main(base + ["--expert-option", "settle_steps"]) == 2
    assert "--expert-option takes NAME=VALUE" in capsys.readouterr().err
    with h5py.File(out, "r+") as f:  # as written before collections were recorded
        del f["data"].attrs["collection"]
    more = ["--episodes", "2"]
    assert cli.main(base + more + ["--expert-option", "settle_steps=4"]) == 2  # cannot be told apart: refused
    assert "predates mu0sim's record of how demos were collected" in capsys.readouterr().err
    assert cli.main(base + more) == 0  # the expert's defaults: what such a file was collected with


def test_dart_collection_executes_noisy_actions_and_labels_the_experts(tmp_path):
    from mu0sim.policies.train_bc import _read_demos

    out = tmp_path / "dart.hdf5"
    collect(CollectConfig(task="Lift", robot="Panda", episodes=2, out=out, execution_noise_std=0.2), progress=False)
    with open_dataset(out) as f:
        executed, expert = f["data/demo_0/actions"][()], f["data/demo_0/expert_actions"][()]
        collection = json.loads(f["data"].attrs["collection"])
    assert executed.shape == expert.shape
    assert np.abs(executed[:, :3] - expert[:, :3]).mean() > 0.05  # the arm was perturbed ...
    np.testing.assert_array_equal(executed[:, 6], expert[:, 6])  # ... the gripper command was not
    assert collection["execution_noise_std"] == 0.2 and collection["expert"] == "LiftExpert"
    assert replay_dataset(out, progress=False).success_reproduced == 2  # the executed actions replay the states
    demo = _read_demos(out, 1)[0]
    np.testing.assert_array_equal(demo.labels, expert)  # behaviour cloning imitates the expert ...
    np.testing.assert_array_equal(demo.executed, executed)  # ... in the states the executed actions reach
    from mu0sim.model import Mu0
    from mu0sim.policies.train_bc import MAX_CHUNK, replay_features

    mu0 = Mu0.from_pretrained(Path(__file__).resolve().parents[1] / "checkpoints" / "mu0-sim")
    rows = replay_features(out, mu0, "test", "keypoints", 8, episodes=1, progress=False, every=8)  # replays exactly
    np.testing.assert_array_equal(rows["action_chunk"][0], expert[:MAX_CHUNK])
    with pytest.raises(DatasetError, match="refusing to append: its demos were collected with"):
        collect(CollectConfig(task="Lift", robot="Panda", episodes=3, out=out), progress=False)


def test_grip_flips_invert_the_executed_gripper_and_label_with_the_experts(tmp_path):
    from mu0sim.rollouts.collect import GRIP_FLIP_STEPS

    out = tmp_path / "flips.hdf5"
    collect(CollectConfig(task="Stack", robot="Panda", episodes=2, out=out, grip_flip_rate=0.05), progress=False)
    with open_dataset(out) as f:
        executed, expert = f["data/demo_0/actions"][()], f["data/demo_0/expert_actions"][()]
        collection = json.loads(f["data"].attrs["collection"])
    flipped = executed[:, 6] != expert[:, 6]
    assert flipped.sum() >= GRIP_FLIP_STEPS and np.array_equal(executed[flipped, 6], -expert[flipped, 6])
    np.testing.assert_array_equal(executed[:, :6], expert[:, :6])  # the arm is not perturbed
    assert collection["grip_flip_rate"] == 0.05
    assert replay_dataset(out, progress=False).success_reproduced == 2
    with pytest.raises(ValueError, match="grip-flip-rate must be in"):
        collect(CollectConfig(task="Stack", robot="Panda", episodes=2, out=tmp_path / "x.hdf5", grip_flip_rate=1.5),
                progress=False)
    # clean collections record no grip_flip_rate: files written before it existed still take appends
    assert "grip_flip_rate" not in CollectConfig(task="Stack", robot="Panda", episodes=1, out=out).collection()


def test_takeover_records_the_experts_continuation_from_where_a_policy_left(tiny_mu0, tiny_expert, tmp_path):
    from mu0sim.policies.action_expert import expert_env
    from mu0sim.policies.train_bc import TrainPolicyConfig, train_policy
    from mu0sim.rollouts.collect import Takeover, policy_prefix, takeover_step
    from mu0sim.traces import ExtractConfig, extract_dataset

    ckpt, _ = tiny_mu0
    out = tmp_path / "takeover.hdf5"
    takeover = Takeover(Path(tiny_expert), ckpt, (5, 12))
    collect(CollectConfig(task="Lift", robot="Panda", episodes=2, out=out, takeover=takeover), progress=False)
    with open_dataset(out) as f:
        collection = json.loads(f["data"].attrs["collection"])
        demos = [(int(f[f"data/demo_{i}"].attrs["seed"]), int(f[f"data/demo_{i}"].attrs["start_step"]),
                  f[f"data/demo_{i}/states"][0]) for i in range(2)]
    assert collection["takeover"]["steps"] == [5, 12] and collection["takeover"]["policy_id"]
    env, policy = expert_env(tiny_expert, ckpt, "Lift", "Panda")
    for seed, start_step, first_state in demos:
        assert start_step == takeover_step(seed, (5, 12)) and 5 <= start_step <= 12
        # the recording starts exactly where the policy's episode of that seed was after start_step steps
        np.testing.assert_array_equal(first_state, policy_prefix(env, policy, seed, start_step).state)
    env.close()
    report = replay_dataset(out, progress=False)  # the stored controller memory makes the replay exact
    assert report.success_reproduced == 2 and report.max_state_divergence == 0.0
    extract_dataset(ExtractConfig(dataset=out, mode="sim", camera="agentview"), progress=False)  # μ0's data path
    with pytest.raises(ValueError, match="starts .* steps into its episode .*train μ0 on such files"):
        train_policy(TrainPolicyConfig(data=[str(out)], mu0=str(ckpt), out=str(tmp_path / "p"), steps=2))
    with pytest.raises(DatasetError, match="refusing to append: its demos were collected with"):
        collect(CollectConfig(task="Lift", robot="Panda", episodes=3, out=out), progress=False)


def test_takeover_refuses_what_cannot_work(tiny_mu0, tiny_expert, tmp_path, capsys):
    from mu0sim.cli import main
    from mu0sim.rollouts.collect import Takeover

    ckpt, _ = tiny_mu0
    cases = [("Door", "Panda", (5, 10), "Door's scripted expert cannot take over.*can: Lift, .*Stack"),
             ("Lift", "Sawyer", (5, 10), "acts on Lift/Panda, not on Lift/Sawyer"),
             ("Lift", "Panda", (10, 5), "takeover-steps must be FIRST-LAST with 1 <= FIRST <= LAST, got 10-5")]
    for task, robot, steps, message in cases:
        with pytest.raises(ValueError, match=message):
            collect(CollectConfig(task=task, robot=robot, episodes=1, out=tmp_path / "x.hdf5",
                                  takeover=Takeover(Path(tiny_expert), ckpt, steps)), progress=False)
    assert main(["collect", "--task", "Lift", "--robot", "Panda", "--episodes", "1", "--out", str(tmp_path / "y.hdf5"),
                 "--takeover-policy", tiny_expert, "--takeover-steps", "10"]) == 2
    assert "--takeover-steps takes FIRST-LAST with FIRST <= LAST, got '10'" in capsys.readouterr().err
    assert main(["collect", "--task", "Lift", "--robot", "Panda", "--episodes", "1", "--out", str(tmp_path / "y.hdf5"),
                 "--takeover-policy", str(tmp_path / "nowhere")]) == 2
    assert "no config.json there" in capsys.readouterr().err


def test_appending_a_different_env_is_refused(lift_dataset):
    with pytest.raises(DatasetError, match="refusing to append.*'robot': \\('Panda', 'Sawyer'\\)"):
        collect(CollectConfig(task="Lift", robot="Sawyer", episodes=5, out=lift_dataset, **CAMERA_KWARGS),
                progress=False)


def test_corrupt_and_foreign_files_get_clear_errors(lift_dataset, tmp_path):
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(lift_dataset.read_bytes()[:50_000])
    with pytest.raises(DatasetError, match="truncated.hdf5: not a readable HDF5 file"):
        open_dataset(truncated)
    foreign = tmp_path / "foreign.hdf5"
    with h5py.File(foreign, "w") as f:
        f.create_group("data").create_group("trajectory_0")
    with pytest.raises(DatasetError, match="no data group with env_args"):
        open_dataset(foreign)
    with pytest.raises(FileNotFoundError, match="no such dataset file"):
        open_dataset(tmp_path / "missing.hdf5")


def test_writer_journal_survives_without_commit(tmp_path, lift_dataset):
    """Journalled episodes that never reached commit() (a killed process) are folded in by the next writer."""
    env_args = json.loads(h5py.File(lift_dataset, "r")["data"].attrs["env_args"])
    path = tmp_path / "w.hdf5"
    writer = DatasetWriter(path, env_args)
    writer.add(EpisodeRecord(seed=0, success=False))
    writer.add(EpisodeRecord(seed=1, success=True, kept=True, states=np.zeros((2, 3)), actions=np.zeros((2, 7)),
                             rewards=np.zeros(2), obs={"robot0_eef_pos": np.zeros((3, 3), np.float32)},
                             model_file="<mujoco/>", instruction="lift the red cube"))
    del writer  # no commit
    resumed = DatasetWriter(path, env_args)
    assert resumed.attempts == [(0, 0), (1, 1)] and resumed.num_demos == 1
    with pytest.raises(ValueError, match="seed 1 was already attempted"):
        resumed.add(EpisodeRecord(seed=1, success=False))
    resumed.close()
    with open_dataset(path) as f:
        assert list(f["data"]) == ["demo_0"] and f["mu0sim/attempts"][()].tolist() == [[0, 0], [1, 1]]


def test_max_attempts_bounds_the_whole_file_across_runs(tmp_path):
    path = tmp_path / "budget.hdf5"
    first = _collect(path, 10, max_attempts=2)
    assert first.attempted == 2
    second = _collect(path, 10, max_attempts=3)  # resumed: one more attempt, not three
    assert second.attempted == 1 and second.total_demos == 3
