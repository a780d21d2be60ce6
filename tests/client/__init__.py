"""Tests of roost.client against real in-process Roost servers."""
