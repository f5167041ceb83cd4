"""ODIBI's StoryGenerator: the per-run HTML story (jinja2 template in ``templates/``)."""

from odibi_dagster.observe.story.generator import (
    STORY_FILENAME,
    StoryGenerator,
    graph_layout,
    latest_story,
    story_path,
)

__all__ = ["STORY_FILENAME", "StoryGenerator", "graph_layout", "latest_story", "story_path"]
