"""ODIBI's StoryGenerator: the per-run HTML story (jinja2 template in ``templates/``; the
step graph's picture laid out by ``layout``)."""

from odibi_dagster.observe.story.generator import STORY_FILENAME, StoryGenerator, latest_story, story_path
from odibi_dagster.observe.story.layout import graph_layout

__all__ = ["STORY_FILENAME", "StoryGenerator", "graph_layout", "latest_story", "story_path"]
