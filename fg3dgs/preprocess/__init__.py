"""Preprocessing of portrait videos into training sets (work in progress: head pose)."""
