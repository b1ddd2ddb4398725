import { runMain } from '@chat/platform';
import { startGateway } from './app';

await runMain('gateway', ['NATS'], startGateway);
