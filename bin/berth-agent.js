#!/usr/bin/env node
process.stderr.write('berth-agent: the node agent is not implemented yet (see the project issues)\n');
process.exitCode = 1;
