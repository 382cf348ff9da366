"""Reviewer UI routes: sign-in, queue, history and admin pages (server-rendered Jinja2)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
