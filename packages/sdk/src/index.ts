export * from './bus.js';
export * from './nats.js';
export * from './service.js';
export * from './process.js';
export * from './testing.js';
export * from './patiently.js';
