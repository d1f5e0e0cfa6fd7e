"""A video of a trained policy: ``raymanager evaluate RUN_DIR --video out.gif``.

Episodes run in this process with the checkpoint's agent, on one environment
made with ``render_mode="rgb_array"`` and wrapped in gymnasium's own recording
wrapper :class:`~gymnasium.wrappers.RenderCollection`, which keeps every frame
(the reset's and each step's). The frames are then written as a GIF (Pillow,
which matplotlib brings) or an MP4 (moviepy, as gymnasium's ``RecordVideo``
writes it: ``pip install -e ".[video]"``).

Rendering needs no display: pygame draws the classic-control environments on
SDL's dummy video driver, MuJoCo renders through EGL or OSMesa
(``MUJOCO_GL``; EGL unless set). Where a piece is missing,
:class:`VideoError` says what to install.

    >>> record_video("runs/CartPole-v1-seed0", "policy.gif")   # doctest: +SKIP
    VideoResult(path=PosixPath('policy.gif'), frames=501, returns=[500.0], lengths=[500],
                stored_frames=231, seconds=10.02)

No ray import here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raymanager.config import check_int

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoResult", "check_video_request", "record_video"]

#: File types ``record_video`` writes, by suffix.
VIDEO_SUFFIXES = (".gif", ".mp4")
#: Frames per second when the environment's metadata gives none.
DEFAULT_FPS = 30


class VideoError(RuntimeError):
    """A video cannot be recorded here; the message says what to install or change."""


@dataclass
class VideoResult:
    """Where the video went, and what its episodes did.

    ``frames`` were rendered; the file holds ``stored_frames`` of them: a GIF
    (Pillow) merges a run of identical frames into one longer frame, so it
    may hold fewer, and still plays for ``seconds``.
    """

    path: Path
    frames: int
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    stored_frames: int = 0
    seconds: float = 0.0
    #: Where the run's experiment trackers keep the video too (a run trained with
    #: ``--tracker``): lines to print.
    tracking: list[str] = field(default_factory=list)


def _prepare_headless(env_id: str) -> None:
    # Both must be set before pygame / mujoco are imported by gymnasium.make.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


def _make_render_env(config: dict[str, Any]) -> Any:
    import gymnasium

    from raymanager.envs import env_settings

    settings = env_settings(config)
    _prepare_headless(settings.env_id)
    try:
        return gymnasium.make(settings.env_id, render_mode="rgb_array",
                              max_episode_steps=settings.max_episode_steps,
                              **settings.env_kwargs)
    except gymnasium.error.DependencyNotInstalled as error:
        raise VideoError(
            f"cannot render {settings.env_id}: {error}; install the video extra: "
            f"pip install -e \".[video]\"") from None


def _follow_the_agent(env: Any) -> None:
    """Make a MuJoCo env's free camera track the agent's body.

    Left free, gymnasium's default camera stays where the episode started, and
    a running HalfCheetah leaves the picture within seconds. An env that names
    a camera of its own keeps it.
    """
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None or renderer.camera_id != -1:
        return
    import mujoco

    renderer.camera_id = None  # -1 would reset the camera to "free" on every frame
    renderer.default_cam_config = {"trackbodyid": 1, **(renderer.default_cam_config or {}),
                                   "type": mujoco.mjtCamera.mjCAMERA_TRACKING}


def _first_frame(env: Any, env_id: str, seed: int) -> Any:
    """Reset and render once, turning a missing GL or SDL into a VideoError."""
    try:
        observation, _ = env.reset(seed=seed)
        env.render()
    except Exception as error:
        gl = os.environ.get("MUJOCO_GL", "")
        if "mujoco" in type(env.unwrapped).__module__:
            raise VideoError(
                f"cannot render {env_id} with MUJOCO_GL={gl}: {type(error).__name__}: {error}; "
                f"install EGL (apt-get install libegl1) or OSMesa (apt-get install "
                f"libosmesa6 and set MUJOCO_GL=osmesa)") from None
        raise VideoError(f"cannot render {env_id}: {type(error).__name__}: {error}; install "
                         f"the video extra: pip install -e \".[video]\"") from None
    return observation


def _write(frames: list[np.ndarray], path: Path, fps: int) -> int:
    """Write the video; return the frames the file holds."""
    if path.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
        # No optimizer; Pillow still merges identical consecutive frames (their
        # durations add up), so the file is read back for what it holds.
        images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                       duration=round(1000 / fps), optimize=False, disposal=1)
        with Image.open(path) as written:
            return int(getattr(written, "n_frames", 1))
    try:
        from moviepy import ImageSequenceClip
    except ImportError:
        raise VideoError('MP4 needs moviepy: pip install -e ".[video]" (or write a .gif)'
                         ) from None
    clip = ImageSequenceClip([np.asarray(frame) for frame in frames], fps=fps)
    try:
        clip.write_videofile(str(path), logger=None)
    finally:
        clip.close()
    return len(frames)  # an MP4 keeps every frame


def check_video_request(out: str | os.PathLike[str], episodes: int) -> Path:
    """Refuse a video file type or an episode count :func:`record_video` cannot do.

    >>> check_video_request("policy.avi", 1)
    Traceback (most recent call last):
    ...
    ValueError: --video policy.avi: the file must end in .gif or .mp4
    """
    path = Path(out)
    if path.suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"--video {out}: the file must end in {' or '.join(VIDEO_SUFFIXES)}")
    check_int("episodes", episodes, minimum=1)
    return path


def record_video(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    episodes: int = 1,
    seed: int | None = None,
) -> VideoResult:
    """Record ``episodes`` evaluation episodes of a run's checkpoint into ``out``.

    ``out`` ends in ``.gif`` or ``.mp4``. Episodes are seeded from the
    evaluation seed range, so a video shows an episode like those of an
    evaluation. Raises :class:`VideoError` when this machine cannot render.

    >>> record_video("runs/CartPole-v1-seed0", "policy.gif", episodes=2)   # doctest: +SKIP
    """
    from gymnasium.wrappers import RenderCollection

    from raymanager.agents import make_agent
    from raymanager.training import EVAL_SEED_OFFSET, TrainConfig, load_checkpoint

    path = check_video_request(out, episodes)
    checkpoint = load_checkpoint(run_dir)
    config = TrainConfig.from_mapping(checkpoint.config)
    agent_config = config.agent_config()
    agent = make_agent(agent_config)
    agent.set_weights(checkpoint.weights)
    base_seed = EVAL_SEED_OFFSET + (config.seed if seed is None else seed)
    base_env = _make_render_env(agent_config)
    _follow_the_agent(base_env)
    env = RenderCollection(base_env, pop_frames=False, reset_clean=False)
    result = VideoResult(path=path, frames=0)
    try:
        for episode in range(episodes):
            observation = _first_frame(env, config.env, base_seed + episode)
            total, steps, done = 0.0, 0, False
            while not done:
                action = agent.act(np.asarray(observation)[None])[0]
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                steps += 1
                done = bool(terminated or truncated)
            result.returns.append(total)
            result.lengths.append(steps)
        frames = [np.asarray(frame) for frame in env.render()]
        fps = int(env.metadata.get("render_fps") or DEFAULT_FPS)
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    result.stored_frames = _write(frames, path, fps)
    result.frames = len(frames)
    result.seconds = len(frames) / fps
    result.tracking = _attach_to_trackers(Path(run_dir), path)
    return result


def _attach_to_trackers(run_dir: Path, video: Path) -> list[str]:
    """A run trained with --tracker: the video joins its tracker runs, which writes into
    the run directory (``trackers.json``), so only under its lock; a run another process
    is still training keeps its tracker runs as they are (one WARNING line)."""
    from raymanager.errors import RunLockedError
    from raymanager.rundir import TRACKERS_FILE, DirectoryLock
    from raymanager.tracking.trackers import attach

    folder = run_dir if (run_dir / TRACKERS_FILE).exists() else run_dir.parent
    if not (folder / TRACKERS_FILE).exists():
        return []
    try:
        with DirectoryLock(folder):
            return attach(folder, video)
    except RunLockedError as error:
        logging.getLogger("raymanager").warning(
            "the video is not added to the run's tracker runs: %s", error)
        return []
