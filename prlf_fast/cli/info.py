"""``prlf-fast info``: what was built and what each op uses."""


def register(sub):
    p = sub.add_parser("info", help="show the build and which implementation each op uses")
    p.set_defaults(func=lambda args: __import__("prlf_fast.info", fromlist=["main"]).main())
