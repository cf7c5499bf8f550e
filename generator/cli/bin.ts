#!/usr/bin/env node
// The CLI from its modules (the sources through tsx, or tsc's build); the package's command is
// anklume-gen.cjs, which runs the one-file build of the same code.
import { runProcess } from './main.js';

runProcess();
