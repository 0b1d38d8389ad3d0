"""The learner (and every other wrong caller) as an adversary: each test plays one against the real service."""
