"""Measuring identities: on their own validation frames (``validation``, ``fg3dgs eval
--data``), under speech they never heard (``cross``, ``fg3dgs eval --cross``), and the image
regions and temporal measures both report (``regions``). Above the render pipeline: it
renders through :class:`fg3dgs.pipeline.TalkingHead`."""
