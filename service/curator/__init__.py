"""Curator: curriculum-as-a-service for RL post-training (Actor-Curator)."""
