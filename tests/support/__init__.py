"""Helpers shared by the test suites: real services, processes, builders."""
