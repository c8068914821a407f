"""Shared test helpers: tiny Lightning modules, LR cases and fixtures for each concern."""
