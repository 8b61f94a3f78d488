"""The ``supportline`` command's entry point, importing the CLI only when it runs.

``serve`` starts its background process with multiprocessing's spawn, which runs the
top level of the parent's main script again in the child. With the CLI imported there,
the background process would load migrations, the web server and the SMTP server it
never uses (16 MB of its memory).
"""


def main() -> None:
    from gateway.cli.commands import main as cli_main

    cli_main()
