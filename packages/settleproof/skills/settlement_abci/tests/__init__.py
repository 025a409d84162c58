"""Tests of the settlement skill."""
