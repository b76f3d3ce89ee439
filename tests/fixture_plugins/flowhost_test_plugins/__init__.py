"""Plugins for flowhost's test suite, installed with real entry points like any third party's."""
