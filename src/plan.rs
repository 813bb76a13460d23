//! Policy + kernel features → Plan.
