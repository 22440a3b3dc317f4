"""The synthetic talking-head subject: speech, visemes, an animated photo face, video."""
