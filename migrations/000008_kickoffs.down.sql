DROP TABLE kickoffs;
