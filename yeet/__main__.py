import sys

if sys.argv[1:2] == ["agent"]:
    # The agent needs neither the CLI library nor the compiled extras: start it directly.
    from yeet.remote.agent.main import main as agent_main

    sys.exit(agent_main(sys.argv[2:]))

from yeet.cli.main import main

main()
