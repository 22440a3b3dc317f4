"""Names and limits that the command line, the app and the library share. Torch-free, so
that the command line can check its arguments before importing anything heavy."""

# The rasterization backends
BACKENDS = ("auto", "cpu", "gsplat")

# What a render shows: the base mouth, the lip-sync-refined one, or both side by side
VARIANTS = ("base", "refined", "both")

# Head motion: replay the identity's track, hold its central pose (or give a pose track file);
# eye blinks: replay the track's, or blink at random moments
POSES = ("replay", "static")
BLINKS = ("replay", "auto")

# A pose track shorter than the speech: keep its last pose, or walk it back and forth
POSE_ENDS = ("hold", "loop")

# Image sides the pipeline renders and trains at: H.264 needs even sides; under 64 pixels the
# eye and mouth windows vanish; over 2048 one frame's buffers outgrow an ordinary machine
MIN_SIZE, MAX_SIZE = 64, 2048


def size_problem(size: int) -> str | None:
    """Why ``size`` is not a usable image side (None when it is)."""
    if MIN_SIZE <= size <= MAX_SIZE and size % 2 == 0:
        return None
    return f"an image side must be an even number of pixels from {MIN_SIZE} to {MAX_SIZE}, " \
           f"got {size}"
