export * from './channel.js';
export * from './claims.js';
export * from './codes.js';
export * from './parse.js';
export * from './types.js';
export * from './subject.js';
export * from './service.js';
export * from './emulation.js';
