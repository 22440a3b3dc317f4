"""Measuring identities: fidelity under speech they never heard (``cross``) and the image
regions and temporal measures it reports (``regions``). Above the render pipeline: it
renders through :class:`fg3dgs.pipeline.TalkingHead`."""
