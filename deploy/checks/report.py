"""How every check of the repository ends: each problem on a line of its
own, one summary line last (which .ci/deploy-checks shows), and the exit
status."""


def finish(tool, problems, summary):
    for problem in problems:
        print(f"{tool}: FAILED: {problem}")
    print(f"{tool}: {summary}; {len(problems)} failed")
    return 1 if problems else 0
