"""Screenshot a run's report.html in headless Chromium (the README's docs/report.png).

    .venv/bin/python scripts/screenshot_report.py RUN docs/report.png [--width 1300] [--height 1700]

Needs Chromium, ChromeDriver and Selenium (`make test` installs them where it may).
"""

import argparse
import time
from pathlib import Path

from unike_interp.testing.browser import open_browser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run folder with report.html")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--width", type=int, default=1300, help="window width in CSS pixels (default: 1300)")
    ap.add_argument("--height", type=int, default=1700, help="window height in CSS pixels (default: 1700)")
    args = ap.parse_args()
    page_path = Path(args.run) / "report.html"
    if not page_path.is_file():
        raise SystemExit(f"{page_path}: no such file (run `unike bench {args.run}` or `unike report {args.run}`)")
    with open_browser(args.width, args.height) as page:
        page.get(page_path.resolve().as_uri())
        time.sleep(1.0)  # lazy images in view finish decoding
        page.save_screenshot(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
