"""Server-rendered pages for managers and members: the renderer and its routes."""
