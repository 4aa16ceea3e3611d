"""A cheap workflow for dashboard tests: prints numbered lines slowly (a stand-in for a long run)."""

import time

from mixtrain import MixFlow, mixparam


class Sleepy(MixFlow):
    """Prints numbered lines, one every --delay seconds."""

    label: str = mixparam(description="A tag printed with every line")
    lines: int = mixparam(default=3, description="How many lines to print")
    delay: float = mixparam(default=0.0, description="Seconds between lines")
    mode: str = mixparam(default="plain", description="Output style", choices=["plain", "loud"])

    def run(self):
        for i in range(self.lines):
            text = f"{self.label} line {i}"
            print(text.upper() if self.mode == "loud" else text, flush=True)
            time.sleep(self.delay)
        return {"printed": self.lines}
