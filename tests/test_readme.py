"""The README's testing example runs as written (a RunResult test of an example agent)."""

import pathlib
import re

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
EXAMPLE = re.search(r"## Testing your agent.*?```python\n(.*?)```", README, re.S).group(1)
namespace: dict = {}
exec(compile(EXAMPLE, "README.md", "exec"), namespace)

test_readme_weather_example = namespace["test_weather"]
