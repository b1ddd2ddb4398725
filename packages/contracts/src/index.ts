export * from './errors';
export * from './envelope';
export * from './subjects';
export * from './dto';
export * from './content';
export * from './requests';
export * from './rest';
export * from './events';
