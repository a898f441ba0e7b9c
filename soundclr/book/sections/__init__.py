"""What the book's notebooks show, one module per notebook: each function takes the notebook's
:class:`~soundclr.book.page.Page` (``page = setup(...)``), draws or displays one section of the page
(a figure, a table, a paragraph), and returns what a later section needs, if anything. A notebook cell
is one or two calls of these; see :mod:`soundclr.book.page` for what else a notebook may hold.
"""
