"""Speculative decoding: where drafts come from, how many to verify, and how they are checked."""
