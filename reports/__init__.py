"""Turning result records into the tables a paper prints."""
