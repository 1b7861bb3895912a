//! IoT Hub twin update rules (in progress).
