"""Hooks an admin might configure, as 'module:function' strings, for the culler tests."""

import time


def failing(event):
    raise RuntimeError(f"this hook always fails ({event['phase']} {event['user']})")


def hanging(event):
    time.sleep(3600)  # the culler abandons it after --hook-timeout
